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
Labels of every object: the selector labels plus chart, version, manager and component, and
gen3-helm's common labels (app, release, part-of, critical-service).
*/}}
{{- define "rotator.labels" -}}
helm.sh/chart: {{ include "rotator.chart" . }}
{{ include "rotator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
app.kubernetes.io/part-of: {{ .Values.partOf | quote }}
app: {{ include "rotator.name" . }}
release: {{ .Values.release | quote }}
critical-service: {{ .Values.criticalService | quote }}
{{- end }}

{{/*
Labels of the pods: the selector labels (never overridden: the Deployment selects by them),
then podLabels, then gen3-helm's `app` and `release`. `app` is `gen3job` when
global.netPolicy.enabled: gen3-network-policies deny everything else egress, and rotator must
reach AWS and the run-status APIs.
*/}}
{{- define "rotator.podLabels" -}}
{{- $app := ternary "gen3job" (include "rotator.name" .) (include "rotator.global.netPolicy" . | eq "true") }}
{{- $gen3 := dict "app" $app "release" .Values.release }}
{{- $labels := merge (include "rotator.selectorLabels" . | fromYaml) (deepCopy (.Values.podLabels | default dict)) $gen3 }}
{{- toYaml $labels }}
{{- end }}

{{/*
gen3-helm's shared values (`global`), always a map.
*/}}
{{- define "rotator.global" -}}
{{- toJson (.Values.global | default dict) }}
{{- end }}

{{/*
"true" when gen3-helm's global.netPolicy.enabled is.
*/}}
{{- define "rotator.global.netPolicy" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- dig "netPolicy" "enabled" false $global | toString }}
{{- end }}

{{/*
The hostname: hostname, else global.hostname; empty when only gen3-workflow's config has it.
*/}}
{{- define "rotator.hostname" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- .Values.hostname | default (dig "hostname" "" $global) }}
{{- end }}

{{/*
The AWS region: aws.region, else global.aws.region; empty: the one IRSA injects.
*/}}
{{- define "rotator.region" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- .Values.aws.region | default (dig "aws" "region" "" $global) }}
{{- end }}

{{/*
AWS partition of the region's ARNs.
*/}}
{{- define "rotator.partition" -}}
{{- $region := include "rotator.region" . }}
{{- if hasPrefix "cn-" $region }}aws-cn{{ else if hasPrefix "us-gov-" $region }}aws-us-gov{{ else }}aws{{ end }}
{{- end }}

{{/*
"true" when the chart manages its IAM role through Crossplane: global.crossplane.enabled, and
no role of the operator's own (serviceAccount.roleArn, which wins).
*/}}
{{- define "rotator.crossplane.enabled" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- and (dig "crossplane" "enabled" false $global) (not .Values.serviceAccount.roleArn) | toString }}
{{- end }}

{{/*
global.crossplane.accountId as a 12-digit string. gen3-helm writes it as a YAML number, which
Helm reads as a float (and prints as 1.23456789012e+11).
*/}}
{{- define "rotator.crossplane.accountId" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- $id := dig "crossplane" "accountId" "" $global }}
{{- $id = kindIs "float64" $id | ternary (printf "%.0f" $id) (toString $id) }}
{{- if not (regexMatch "^[0-9]{12}$" $id) }}
{{- fail (printf "global.crossplane.accountId must be a 12-digit AWS account id (got %q)" $id) }}
{{- end }}
{{- $id }}
{{- end }}

{{/*
Accounts rotator may act in, as a JSON list: allowedAccountIds, else global.crossplane.accountId
when global.crossplane.enabled (gen3-helm's defaults carry a placeholder id otherwise).
*/}}
{{- define "rotator.accountIds" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- if .Values.allowedAccountIds }}
{{- toJson .Values.allowedAccountIds }}
{{- else if dig "crossplane" "enabled" false $global }}
{{- toJson (list (include "rotator.crossplane.accountId" .)) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/*
Name of the IAM role Crossplane creates: <environment>-<namespace>-<service account>, as
gen3-helm's gen3-workflow names its own.
*/}}
{{- define "rotator.crossplane.roleName" -}}
{{- $global := include "rotator.global" . | fromJson }}
{{- printf "%s-%s-%s" (dig "environment" "default" $global) (include "rotator.namespace" .) (include "rotator.serviceAccountName" .) | trunc 64 | trimSuffix "-" }}
{{- end }}

{{/*
The role the service account assumes (IRSA): serviceAccount.roleArn, else the Crossplane role.
*/}}
{{- define "rotator.roleArn" -}}
{{- if .Values.serviceAccount.roleArn }}
{{- .Values.serviceAccount.roleArn }}
{{- else if eq (include "rotator.crossplane.enabled" .) "true" }}
{{- printf "arn:%s:iam::%s:role/%s" (include "rotator.partition" .) (include "rotator.crossplane.accountId" .) (include "rotator.crossplane.roleName" .) }}
{{- end }}
{{- end }}

{{/*
Literal name prefixes of the run-secret patterns, as a JSON list: for each alternative that
starts with `^`, its literal characters up to the first regex syntax (without a last one made
optional by ?, * or {). Always a prefix of what rotator's own secret_inventory.pattern_prefixes
finds (or ""), so the policy never allows less than rotator lists.
*/}}
{{- define "rotator.runSecretPrefixes" -}}
{{- $prefixes := list }}
{{- range .Values.runSecrets.patterns }}
{{- range splitList "|" . }}
{{- $prefix := "" }}
{{- if hasPrefix "^" . }}
{{- $rest := trimPrefix "^" . }}
{{- $prefix = regexFind "^[A-Za-z0-9/_=@-]*" $rest }}
{{- $next := substr (len $prefix) (add1 (len $prefix) | int) $rest }}
{{- if and $prefix (has $next (list "?" "*" "{")) }}
{{- $prefix = substr 0 (sub (len $prefix) 1 | int) $prefix }}
{{- end }}
{{- end }}
{{- $prefixes = append $prefixes $prefix }}
{{- end }}
{{- end }}
{{- toJson (uniq $prefixes) }}
{{- end }}

{{/*
The bot-key store the chart configures: "gen3workflow-db", "secretsmanager", or "" (rotator's
default: gen3workflow-db when the mounted gen3-workflow config holds DB_* and ENCRYPTION_KEY).
gen3workflow-db takes its settings from gen3-workflow's config file (gen3workflowConfig), from
botKeys.db (an existing Secret for the password and ENCRYPTION_KEY, values for the rest), or
both (botKeys.db wins). Rendering fails when gen3workflow-db has no source for a setting, and
when botKeys.db is set for another store (rotator would silently ignore it).
*/}}
{{- define "rotator.botKeyStore" -}}
{{- $v := .Values -}}
{{- $db := $v.botKeys.db }}
{{- $config := $v.gen3workflowConfig.secretName }}
{{- if eq $v.botKeys.store "gen3workflow-db" }}
{{- if not (or $config $db.secret.name) }}
{{- fail "botKeys.store is gen3workflow-db but nothing gives its database settings: set gen3workflowConfig.secretName (gen3-helm: gen3workflow-g3auto, whose config file holds DB_* and ENCRYPTION_KEY), or botKeys.db.secret.name (an existing Secret with the database password and ENCRYPTION_KEY) with botKeys.db.host, botKeys.db.user and botKeys.db.database" }}
{{- end }}
{{- if not $config }}
{{- $missing := list }}
{{- range $name := list "host" "user" "database" }}
{{- if not (get $db $name) }}
{{- $missing = append $missing (printf "botKeys.db.%s" $name) }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "botKeys.store is gen3workflow-db with botKeys.db.secret.name (%s), which gives only the password and ENCRYPTION_KEY: set %s too, or gen3workflowConfig.secretName (its DB_* fill them)" $db.secret.name (join ", " $missing)) }}
{{- end }}
{{- end }}
{{- else }}
{{- $set := list }}
{{- range $name := list "host" "port" "user" "database" "sslmode" }}
{{- if get $db $name }}
{{- $set = append $set (printf "botKeys.db.%s" $name) }}
{{- end }}
{{- end }}
{{- if $db.secret.name }}{{ $set = append $set "botKeys.db.secret.name" }}{{ end }}
{{- if $db.sslRootCert.configMapName }}{{ $set = append $set "botKeys.db.sslRootCert.configMapName" }}{{ end }}
{{- if $set }}
{{- fail (printf "%s: settings of the gen3workflow-db bot-key store, but botKeys.store is %q: set botKeys.store to gen3workflow-db (or unset them)" (join ", " $set) $v.botKeys.store) }}
{{- end }}
{{- end }}
{{- $v.botKeys.store }}
{{- end }}

{{/*
The least-privilege IAM policy for this hostname (JSON). IAM: key operations only on users
tagged name=gen3wf-<H> (the tag the service puts on every user it creates; aws:ResourceTag is
the condition key the service authorization reference lists for IAM users), CreateAccessKey
only on bot users; Secrets Manager: the bot-key store only under its prefix, run secrets only
under the patterns' prefixes; both only in the region(s) and account(s) when they are known.
With the gen3workflow-db store (the service's table: no AWS call) there is no store statement;
iamPolicy.storeMigration adds reading and deleting the Secrets Manager store's secrets.
*/}}
{{- define "rotator.iamPolicy" -}}
{{- $hostname := include "rotator.hostname" . }}
{{- if not $hostname }}
{{- fail "the IAM policy needs the hostname: set hostname (or global.hostname)" }}
{{- end }}
{{- $partition := include "rotator.partition" . }}
{{- $accounts := include "rotator.accountIds" . | fromJsonArray | default (list "*") }}
{{- $region := include "rotator.region" . | default "*" }}
{{- $runRegions := .Values.runSecrets.regions | default (list $region) }}
{{- $tag := dict "StringEquals" (dict "aws:ResourceTag/name" (printf "gen3wf-%s" (replace "." "-" $hostname))) }}
{{- $storePrefix := .Values.botKeys.secretPrefix | default (printf "gen3wf-rotator/%s/bot-keys/" $hostname) }}
{{- $users := list }}
{{- $bots := list }}
{{- $store := list }}
{{- $runSecrets := list }}
{{- range $account := $accounts }}
{{- $users = append $users (printf "arn:%s:iam::%s:user/gen3wf-*" $partition $account) }}
{{- $bots = append $bots (printf "arn:%s:iam::%s:user/gen3wf-*-bot" $partition $account) }}
{{- $store = append $store (printf "arn:%s:secretsmanager:%s:%s:secret:%s*" $partition $region $account $storePrefix) }}
{{- range $runRegion := $runRegions }}
{{- range $prefix := include "rotator.runSecretPrefixes" $ | fromJsonArray }}
{{- $runSecrets = append $runSecrets (printf "arn:%s:secretsmanager:%s:%s:secret:%s*" $partition $runRegion $account $prefix) }}
{{- end }}
{{- end }}
{{- end }}
{{- $statements := list
  (dict "Sid" "IdentityAndAccountWideReadsThatTakeNoResource" "Effect" "Allow" "Resource" "*" "Action" (list
    "sts:GetCallerIdentity" "iam:GetAccountAuthorizationDetails" "iam:GenerateCredentialReport" "iam:GetCredentialReport"
    "iam:GetAccountSummary" "secretsmanager:ListSecrets"))
  (dict "Sid" "Gen3WorkflowUserKeys" "Effect" "Allow" "Resource" $users "Condition" $tag "Action" (list
    "iam:ListAccessKeys" "iam:DeleteAccessKey"))
  (dict "Sid" "Gen3WorkflowBotKeyCreation" "Effect" "Allow" "Resource" $bots "Condition" $tag "Action" (list
    "iam:CreateAccessKey"))
}}
{{- if ne (include "rotator.botKeyStore" .) "gen3workflow-db" }}
{{- $statements = append $statements (dict "Sid" "BotKeyStore" "Effect" "Allow" "Resource" $store "Action" (list
    "secretsmanager:GetSecretValue" "secretsmanager:CreateSecret" "secretsmanager:PutSecretValue"
    "secretsmanager:UpdateSecretVersionStage" "secretsmanager:TagResource")) }}
{{- end }}
{{- if .Values.iamPolicy.storeMigration }}
{{- $statements = append $statements (dict "Sid" "BotKeyStoreMigration" "Effect" "Allow" "Resource" $store "Action" (list
    "secretsmanager:GetSecretValue" "secretsmanager:DeleteSecret")) }}
{{- end }}
{{- $statements = append $statements (dict "Sid" "RunSecrets" "Effect" "Allow" "Resource" (uniq $runSecrets) "Action" (list
    "secretsmanager:DescribeSecret" "secretsmanager:TagResource" "secretsmanager:UntagResource"
    "secretsmanager:DeleteSecret" "secretsmanager:RestoreSecret" "secretsmanager:RemoveRegionsFromReplication")) }}
{{- toPrettyJson (dict "Version" "2012-10-17" "Statement" $statements) }}
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
Mount directory of the token and password files (Secrets mounted as files, read at each run,
so a rotated Secret is picked up without a restart).
*/}}
{{- define "rotator.secretsDir" -}}
/var/run/secrets/rotator
{{- end }}

{{/*
Path of the gen3workflow-db store's CA bundle (botKeys.db.sslRootCert), mounted from its ConfigMap.
*/}}
{{- define "rotator.dbRootCert" -}}
/etc/rotator/db-ca/root.crt
{{- end }}

{{/*
The Secrets mounted as files, as a JSON list of {volume, secretName, key, file, variable}.
*/}}
{{- define "rotator.secretFiles" -}}
{{- $v := .Values -}}
{{- $files := list }}
{{- with $v.runSecrets.seqera.tokenSecret }}{{- if .name }}
{{- $files = append $files (dict "volume" "seqera-token" "secretName" .name "key" .key "file" "token" "variable" "ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE") }}
{{- end }}{{- end }}
{{- with $v.runSecrets.tes.tokenSecret }}{{- if .name }}
{{- $files = append $files (dict "volume" "tes-token" "secretName" .name "key" .key "file" "token" "variable" "ROTATOR_RUN_SECRETS__TES__TOKEN_FILE") }}
{{- end }}{{- end }}
{{- with $v.runSecrets.tes.basicAuthSecret }}{{- if .name }}
{{- $files = append $files (dict "volume" "tes-password" "secretName" .name "key" .passwordKey "file" "password" "variable" "ROTATOR_RUN_SECRETS__TES__PASSWORD_FILE") }}
{{- end }}{{- end }}
{{- if and (eq $v.mode "cronjob") $v.cronjob.pushgatewayUrl $v.cronjob.pushgatewayAuthSecret.name }}
{{- with $v.cronjob.pushgatewayAuthSecret }}
{{- $files = append $files (dict "volume" "pushgateway-password" "secretName" .name "key" .passwordKey "file" "password" "variable" "ROTATOR_METRICS__PUSHGATEWAY_PASSWORD_FILE") }}
{{- end }}
{{- end }}
{{- if eq $v.botKeys.store "gen3workflow-db" }}{{- with $v.botKeys.db.secret }}{{- if .name }}
{{- $files = append $files (dict "volume" "db-password" "secretName" .name "key" .passwordKey "file" "password" "variable" "ROTATOR_BOT_KEYS__DB__PASSWORD_FILE") }}
{{- $files = append $files (dict "volume" "db-encryption-key" "secretName" .name "key" .encryptionKeyKey "file" "encryption-key" "variable" "ROTATOR_BOT_KEYS__DB__ENCRYPTION_KEY_FILE") }}
{{- end }}{{- end }}{{- end }}
{{- with $v.notifications.slackWebhook }}{{- if .secretName }}
{{- $files = append $files (dict "volume" "slack-webhook" "secretName" .secretName "key" .key "file" "webhook" "variable" "ROTATOR_NOTIFY__SLACK_WEBHOOK_FILE") }}
{{- end }}{{- end }}
{{- toJson $files }}
{{- end }}

{{/*
The container's environment: values mapped to ROTATOR_* settings and AWS_REGION, then
extraEnv. Tokens and passwords only ever come from existing Secrets, mounted as files
(rotator.secretFiles); user names, which are no secret, come from secretKeyRef.
*/}}
{{- define "rotator.env" -}}
{{- $v := .Values -}}
{{- $hostname := include "rotator.hostname" . }}
{{- $region := include "rotator.region" . }}
{{- $accounts := include "rotator.accountIds" . | fromJsonArray }}
{{- if and $v.gen3workflowConfig.secretName (not (kindIs "invalid" $v.userKeys.lifetimeDays)) }}
{{- fail (printf "userKeys.lifetimeDays (%v) and gen3workflowConfig.secretName (%s) are both set: rotator must call expired exactly what gen3-workflow does, so the lifetime comes from IAM_KEYS_LIFETIME_DAYS in gen3-workflow's config (default 30); unset userKeys.lifetimeDays" $v.userKeys.lifetimeDays $v.gen3workflowConfig.secretName) }}
{{- end }}
{{- if $hostname }}
- {name: ROTATOR_HOSTNAME, value: {{ $hostname | quote }}}
{{- end }}
{{- if $v.gen3workflowConfig.secretName }}
- {name: ROTATOR_GEN3WORKFLOW_CONFIG, value: /etc/gen3-workflow/{{ $v.gen3workflowConfig.key }}}
{{- end }}
- {name: ROTATOR_DRY_RUN, value: {{ $v.dryRun | quote }}}
{{- with $accounts }}
- {name: ROTATOR_ALLOWED_ACCOUNT_IDS, value: {{ toJson . | quote }}}
{{- end }}
{{- if $region }}
- {name: AWS_REGION, value: {{ $region | quote }}}
{{- end }}
{{- if not (kindIs "invalid" $v.userKeys.lifetimeDays) }}
- {name: ROTATOR_USER_KEYS__LIFETIME_DAYS, value: {{ $v.userKeys.lifetimeDays | quote }}}
{{- end }}
- {name: ROTATOR_USER_KEYS__DELETE_INACTIVE, value: {{ $v.userKeys.deleteInactive | quote }}}
- {name: ROTATOR_BOT_KEYS__LIFETIME_DAYS, value: {{ $v.botKeys.lifetimeDays | quote }}}
- {name: ROTATOR_BOT_KEYS__ORPHAN_GRACE_MINUTES, value: {{ $v.botKeys.orphanGraceMinutes | quote }}}
- {name: ROTATOR_BOT_KEYS__VERIFY_TIMEOUT_SECONDS, value: {{ $v.botKeys.verifyTimeoutSeconds | quote }}}
{{- with include "rotator.botKeyStore" . }}
- {name: ROTATOR_BOT_KEYS__STORE, value: {{ . | quote }}}
{{- end }}
{{- if eq $v.botKeys.store "gen3workflow-db" }}
{{- range $name, $variable := dict "host" "HOST" "port" "PORT" "user" "USER" "database" "DATABASE" "sslmode" "SSLMODE" }}
{{- with get $v.botKeys.db $name }}
- {name: ROTATOR_BOT_KEYS__DB__{{ $variable }}, value: {{ . | toString | quote }}}
{{- end }}
{{- end }}
{{- if $v.botKeys.db.sslRootCert.configMapName }}
- {name: ROTATOR_BOT_KEYS__DB__SSLROOTCERT, value: {{ include "rotator.dbRootCert" . | quote }}}
{{- end }}
{{- end }}
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
{{- with $v.runSecrets.regions }}
- {name: ROTATOR_RUN_SECRETS__REGIONS, value: {{ toJson . | quote }}}
{{- end }}
{{- with $v.runSecrets.seqera }}
{{- if .url }}
- {name: ROTATOR_RUN_SECRETS__SEQERA__URL, value: {{ .url | quote }}}
{{- end }}
{{- if .workspaceId }}
- {name: ROTATOR_RUN_SECRETS__SEQERA__WORKSPACE_ID, value: {{ .workspaceId | quote }}}
{{- end }}
{{- end }}
{{- with $v.runSecrets.tes }}
{{- if .url }}
- {name: ROTATOR_RUN_SECRETS__TES__URL, value: {{ .url | quote }}}
{{- end }}
{{- if .basicAuthSecret.name }}
- name: ROTATOR_RUN_SECRETS__TES__USERNAME
  valueFrom: {secretKeyRef: {name: {{ .basicAuthSecret.name | quote }}, key: {{ .basicAuthSecret.usernameKey | quote }}}}
{{- end }}
{{- end }}
{{- range include "rotator.secretFiles" . | fromJsonArray }}
- {name: {{ .variable }}, value: {{ printf "%s/%s/%s" (include "rotator.secretsDir" $) .volume .file | quote }}}
{{- end }}
- {name: ROTATOR_SAFETY__MAX_DELETIONS, value: {{ $v.safety.maxDeletions | quote }}}
- {name: ROTATOR_SAFETY__MAX_DELETION_FRACTION, value: {{ $v.safety.maxDeletionFraction | quote }}}
- {name: ROTATOR_SAFETY__MIN_MANAGED_FOR_FRACTION, value: {{ $v.safety.minManagedForFraction | quote }}}
- {name: ROTATOR_CAPACITY__WARN_FRACTION, value: {{ $v.capacity.warnFraction | quote }}}
- {name: ROTATOR_LOG__FORMAT, value: {{ $v.log.format | quote }}}
- {name: ROTATOR_LOG__LEVEL, value: {{ $v.log.level | quote }}}
- {name: ROTATOR_METRICS__PORT, value: {{ $v.metrics.port | quote }}}
{{- if and (eq $v.mode "cronjob") $v.cronjob.pushgatewayUrl }}
- {name: ROTATOR_METRICS__PUSHGATEWAY_URL, value: {{ $v.cronjob.pushgatewayUrl | quote }}}
{{- with $v.cronjob.pushgatewayAuthSecret }}{{ if .name }}
- name: ROTATOR_METRICS__PUSHGATEWAY_USERNAME
  valueFrom: {secretKeyRef: {name: {{ .name | quote }}, key: {{ .usernameKey | quote }}}}
{{- end }}{{- end }}
{{- end }}
{{- if eq $v.mode "deployment" }}
- {name: ROTATOR_METRICS__BIND_ADDRESS, value: {{ $v.metrics.bindAddress | quote }}}
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
config file when gen3workflowConfig.secretName is set, the token and password files, then
extraVolumes. Files are readable by the pod's group only (fsGroup).
*/}}
{{- define "rotator.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 64Mi}
{{- if .Values.gen3workflowConfig.secretName }}
- name: gen3workflow-config
  secret:
    secretName: {{ .Values.gen3workflowConfig.secretName | quote }}
    items: [{key: {{ .Values.gen3workflowConfig.key | quote }}, path: {{ .Values.gen3workflowConfig.key | quote }}}]
    defaultMode: 0440
{{- end }}
{{- range include "rotator.secretFiles" . | fromJsonArray }}
- name: {{ .volume }}
  secret:
    secretName: {{ .secretName | quote }}
    items: [{key: {{ .key | quote }}, path: {{ .file }}}]
    defaultMode: 0440
{{- end }}
{{- if eq .Values.botKeys.store "gen3workflow-db" }}{{- with .Values.botKeys.db.sslRootCert }}{{- if .configMapName }}
- name: db-ca
  configMap:
    name: {{ .configMapName | quote }}
    items: [{key: {{ .key | quote }}, path: {{ include "rotator.dbRootCert" $ | base }}}]
{{- end }}{{- end }}{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The container's mounts, matching rotator.volumes (no subPath: a subPath mount never sees a
rotated Secret), then extraVolumeMounts.
*/}}
{{- define "rotator.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.gen3workflowConfig.secretName }}
- {name: gen3workflow-config, mountPath: /etc/gen3-workflow, readOnly: true}
{{- end }}
{{- range include "rotator.secretFiles" . | fromJsonArray }}
- {name: {{ .volume }}, mountPath: {{ printf "%s/%s" (include "rotator.secretsDir" $) .volume }}, readOnly: true}
{{- end }}
{{- if and (eq .Values.botKeys.store "gen3workflow-db") .Values.botKeys.db.sslRootCert.configMapName }}
- {name: db-ca, mountPath: {{ include "rotator.dbRootCert" . | dir }}, readOnly: true}
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
