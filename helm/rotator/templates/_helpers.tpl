{{/*
Name of the chart, or nameOverride; truncated to 63 characters (the DNS label limit).
*/}}
{{- define "rotator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name of the release's objects: fullnameOverride, or "<release>-<name>"
(just the release name when it already contains the chart name); at most 63 characters.
*/}}
{{- define "rotator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Namespace of every object: namespaceOverride, or the release namespace (as in the
prometheus-community charts, for umbrella charts that install into another namespace).
*/}}
{{- define "rotator.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "rotator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: the Deployment's selector and the Service's; never change them after install.
*/}}
{{- define "rotator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rotator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object: the selector labels plus chart, version, manager and component.
*/}}
{{- define "rotator.labels" -}}
helm.sh/chart: {{ include "rotator.chart" . }}
{{ include "rotator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{/*
Labels of the pods: the selector labels plus podLabels.
*/}}
{{- define "rotator.podLabels" -}}
{{ include "rotator.selectorLabels" . }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of the service account: serviceAccount.name, or the full name when the chart creates
it, or "default" when it does not.
*/}}
{{- define "rotator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rotator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image: image.repository and image.tag, which defaults to the chart's appVersion
(the tag `make image` gives the image it builds).
*/}}
{{- define "rotator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The container's environment: values mapped to ROTATOR_* settings and AWS_REGION, then
extraEnv. Tokens only ever come from existing Secrets (secretKeyRef), never from values.
*/}}
{{- define "rotator.env" -}}
{{- $v := .Values -}}
{{- if $v.hostname }}
- {name: ROTATOR_HOSTNAME, value: {{ $v.hostname | quote }}}
{{- end }}
{{- if $v.gen3workflowConfig.secretName }}
- {name: ROTATOR_GEN3WORKFLOW_CONFIG, value: /etc/gen3-workflow/{{ $v.gen3workflowConfig.key }}}
{{- end }}
- {name: ROTATOR_DRY_RUN, value: {{ $v.dryRun | quote }}}
{{- with $v.allowedAccountIds }}
- {name: ROTATOR_ALLOWED_ACCOUNT_IDS, value: {{ toJson . | quote }}}
{{- end }}
{{- if $v.aws.region }}
- {name: AWS_REGION, value: {{ $v.aws.region | quote }}}
{{- end }}
{{- if not $v.gen3workflowConfig.secretName }}
- {name: ROTATOR_USER_KEYS__LIFETIME_DAYS, value: {{ $v.userKeys.lifetimeDays | quote }}}
{{- end }}
- {name: ROTATOR_USER_KEYS__DELETE_INACTIVE, value: {{ $v.userKeys.deleteInactive | quote }}}
- {name: ROTATOR_BOT_KEYS__LIFETIME_DAYS, value: {{ $v.botKeys.lifetimeDays | quote }}}
- {name: ROTATOR_BOT_KEYS__ORPHAN_GRACE_MINUTES, value: {{ $v.botKeys.orphanGraceMinutes | quote }}}
{{- if $v.botKeys.secretPrefix }}
- {name: ROTATOR_BOT_KEYS__SECRET_PREFIX, value: {{ $v.botKeys.secretPrefix | quote }}}
{{- end }}
- {name: ROTATOR_RUN_SECRETS__PATTERNS, value: {{ toJson $v.runSecrets.patterns | quote }}}
- {name: ROTATOR_RUN_SECRETS__STATUS_SOURCE, value: {{ $v.runSecrets.statusSource | quote }}}
- {name: ROTATOR_RUN_SECRETS__TIMEOUT_SECONDS, value: {{ $v.runSecrets.timeoutSeconds | quote }}}
- {name: ROTATOR_RUN_SECRETS__MIN_AGE_MINUTES, value: {{ $v.runSecrets.minAgeMinutes | quote }}}
- {name: ROTATOR_RUN_SECRETS__MAX_AGE_DAYS, value: {{ $v.runSecrets.maxAgeDays | quote }}}
- {name: ROTATOR_RUN_SECRETS__RECOVERY_WINDOW_DAYS, value: {{ $v.runSecrets.recoveryWindowDays | quote }}}
- {name: ROTATOR_RUN_SECRETS__REMOVE_REPLICAS, value: {{ $v.runSecrets.removeReplicas | quote }}}
{{- with $v.runSecrets.seqera }}
{{- if .url }}
- {name: ROTATOR_RUN_SECRETS__SEQERA__URL, value: {{ .url | quote }}}
{{- end }}
{{- if .workspaceId }}
- {name: ROTATOR_RUN_SECRETS__SEQERA__WORKSPACE_ID, value: {{ .workspaceId | quote }}}
{{- end }}
{{- if .tokenSecret.name }}
- name: ROTATOR_RUN_SECRETS__SEQERA__TOKEN
  valueFrom: {secretKeyRef: {name: {{ .tokenSecret.name | quote }}, key: {{ .tokenSecret.key | quote }}}}
{{- end }}
{{- end }}
{{- with $v.runSecrets.tes }}
{{- if .url }}
- {name: ROTATOR_RUN_SECRETS__TES__URL, value: {{ .url | quote }}}
{{- end }}
{{- if .tokenSecret.name }}
- name: ROTATOR_RUN_SECRETS__TES__TOKEN
  valueFrom: {secretKeyRef: {name: {{ .tokenSecret.name | quote }}, key: {{ .tokenSecret.key | quote }}}}
{{- end }}
{{- if .basicAuthSecret.name }}
- name: ROTATOR_RUN_SECRETS__TES__USERNAME
  valueFrom: {secretKeyRef: {name: {{ .basicAuthSecret.name | quote }}, key: {{ .basicAuthSecret.usernameKey | quote }}}}
- name: ROTATOR_RUN_SECRETS__TES__PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .basicAuthSecret.name | quote }}, key: {{ .basicAuthSecret.passwordKey | quote }}}}
{{- end }}
{{- end }}
- {name: ROTATOR_SAFETY__MAX_DELETIONS, value: {{ $v.safety.maxDeletions | quote }}}
- {name: ROTATOR_SAFETY__MAX_DELETION_FRACTION, value: {{ $v.safety.maxDeletionFraction | quote }}}
- {name: ROTATOR_SAFETY__MIN_MANAGED_FOR_FRACTION, value: {{ $v.safety.minManagedForFraction | quote }}}
- {name: ROTATOR_LOG__FORMAT, value: {{ $v.log.format | quote }}}
- {name: ROTATOR_LOG__LEVEL, value: {{ $v.log.level | quote }}}
- {name: ROTATOR_METRICS__PORT, value: {{ $v.metrics.port | quote }}}
{{- if and (eq $v.mode "cronjob") $v.cronjob.pushgatewayUrl }}
- {name: ROTATOR_METRICS__PUSHGATEWAY_URL, value: {{ $v.cronjob.pushgatewayUrl | quote }}}
{{- end }}
{{- if eq $v.mode "deployment" }}
- {name: ROTATOR_SCHEDULE__USER_KEYS, value: {{ $v.schedule.userKeys | quote }}}
- {name: ROTATOR_SCHEDULE__BOT_KEYS, value: {{ $v.schedule.botKeys | quote }}}
- {name: ROTATOR_SCHEDULE__RUN_SECRETS, value: {{ $v.schedule.runSecrets | quote }}}
- {name: ROTATOR_SCHEDULE__RUN_ON_START, value: {{ $v.schedule.runOnStart | quote }}}
- {name: ROTATOR_SCHEDULE__JITTER_SECONDS, value: {{ $v.schedule.jitterSeconds | quote }}}
- {name: ROTATOR_SCHEDULE__SHUTDOWN_GRACE_SECONDS, value: {{ $v.schedule.shutdownGraceSeconds | quote }}}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod's volumes: an emptyDir for /tmp (the root filesystem is read-only), gen3-workflow's
config Secret when gen3workflowConfig.secretName is set, then extraVolumes.
*/}}
{{- define "rotator.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if .Values.gen3workflowConfig.secretName }}
- name: gen3workflow-config
  secret:
    secretName: {{ .Values.gen3workflowConfig.secretName | quote }}
    items: [{key: {{ .Values.gen3workflowConfig.key | quote }}, path: {{ .Values.gen3workflowConfig.key | quote }}}]
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The container's mounts, matching rotator.volumes, then extraVolumeMounts.
*/}}
{{- define "rotator.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.gen3workflowConfig.secretName }}
- {name: gen3workflow-config, mountPath: /etc/gen3-workflow, readOnly: true}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod metadata: labels and podAnnotations.
*/}}
{{- define "rotator.podMetadata" -}}
labels: {{ include "rotator.podLabels" . | nindent 2 }}
{{- with .Values.podAnnotations }}
annotations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by the CronJob's and the Deployment's pods (without containers).
enableServiceLinks is always false: Kubernetes would otherwise give the pod ROTATOR_*
variables for any Service named rotator... in the namespace, including this chart's own.
*/}}
{{- define "rotator.podSpec" -}}
serviceAccountName: {{ include "rotator.serviceAccountName" . }}
automountServiceAccountToken: false  # rotator never talks to the Kubernetes API; IRSA mounts its own token
enableServiceLinks: false
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{ toYaml . | nindent 2 }}
{{- end }}
volumes: {{ include "rotator.volumes" . | nindent 2 }}
{{- end }}

{{/*
The rotator container (without args, ports and probes, which depend on the mode).
*/}}
{{- define "rotator.container" -}}
name: rotator
image: {{ include "rotator.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext: {{ toYaml .Values.securityContext | nindent 2 }}
resources: {{ toYaml .Values.resources | nindent 2 }}
env: {{ include "rotator.env" . | nindent 2 }}
volumeMounts: {{ include "rotator.volumeMounts" . | nindent 2 }}
{{- end }}
