"""The only code that changes anything, and the only code that knows about dry-run.

Idempotent and isolated: a key already gone counts as deleted, a key another actor
created first is not a failure, and one failed action never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import groupby

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from rotator.aws import describe_error, error_code
from rotator.inventory import list_access_keys
from rotator.keystore import BotKeyStore
from rotator.model import (
    CREATE_KEY,
    DELETE_KEY,
    DELETE_SECRET,
    DONE,
    DRY_RUN,
    FAILED,
    FORGET_KEY,
    SKIPPED,
    Action,
    NewKey,
    Outcome,
)

log = structlog.get_logger("rotator.executor")

PERMISSIONS = (
    "iam:DeleteAccessKey",
    "iam:CreateAccessKey",
    "iam:ListAccessKeys",
    "secretsmanager:TagResource",
    "secretsmanager:RemoveRegionsFromReplication",
    "secretsmanager:DeleteSecret",
)

# Tags set on a run secret just before deleting it: restore-secrets finds them by these.
DELETED_FOR_RUN_TAG = "gen3wf-rotator:deleted-for-run"
DELETED_AT_TAG = "gen3wf-rotator:deleted-at"

_ERRORS = (ClientError, BotoCoreError, ValueError)


class Executor:
    def __init__(
        self,
        *,
        iam,
        store: BotKeyStore | None,
        dry_run: bool,
        sm=None,
        recovery_window_days: int = 7,
        recheck: Callable[[Action], str | None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``recheck(action)`` returns why a planned secret deletion no longer holds, or None."""
        self._iam = iam
        self._store = store
        self._sm = sm
        self._recovery_window_days = recovery_window_days
        self._recheck = recheck
        self._clock = clock
        self.dry_run = dry_run

    def execute(self, actions: Sequence[Action]) -> tuple[Outcome, ...]:
        if self.dry_run:
            return tuple(self._record(Outcome(a, DRY_RUN)) for a in actions)
        outcomes: list[Outcome] = []
        key_actions = [a for a in actions if a.kind in (DELETE_KEY, CREATE_KEY, FORGET_KEY)]
        for (job, user), group in groupby(key_actions, key=lambda a: (a.job, a.user)):
            group = list(group)
            if job == "bot-keys":
                outcomes.extend(self._apply_bot_user(user, group))
            else:
                outcomes.extend(self._delete_key(a) for a in group)
        outcomes.extend(self._delete_secret(a) for a in actions if a.kind == DELETE_SECRET)
        return tuple(outcomes)

    # --- one action each --------------------------------------------------------

    def _record(self, outcome: Outcome) -> Outcome:
        a = outcome.action
        fields = dict(job=a.job, action=a.kind, target=a.target, reason=a.reason, outcome=outcome.outcome)
        if outcome.outcome == FAILED:
            log.error("action.failed", error=outcome.error, **fields)
        elif outcome.outcome == DONE:
            log.info(_DONE_EVENTS.get(a.kind, "action.done"), **fields)
        else:
            if outcome.error:
                fields["error"] = outcome.error
            log.info(f"action.{outcome.outcome.replace('-', '_')}", **fields)
        return outcome

    def _delete_key(self, action: Action) -> Outcome:
        try:
            self._iam.delete_access_key(UserName=action.user, AccessKeyId=action.key_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":  # already gone: what we wanted
                return self._record(Outcome(action, FAILED, describe_error(exc)))
        except BotoCoreError as exc:
            return self._record(Outcome(action, FAILED, describe_error(exc)))
        return self._record(Outcome(action, DONE))

    # --- bot users: store first, then IAM, then new keys ---------------------------

    def _apply_bot_user(self, user: str, actions: Iterable[Action]) -> list[Outcome]:
        actions = list(actions)
        deletes = [a for a in actions if a.kind == DELETE_KEY]
        forgets = [a for a in actions if a.kind == FORGET_KEY]
        creates = [a for a in actions if a.kind == CREATE_KEY]
        outcomes: list[Outcome] = []

        # Forget keys in the store before deleting them in IAM: the service must never
        # hand out a key that no longer exists. If IAM then fails, the key is an orphan
        # that a later run deletes.
        to_forget = {a.key_id for a in deletes + forgets}
        if to_forget:
            try:
                self._store.remove(user, to_forget)
            except _ERRORS as exc:
                error = f"store: {describe_error(exc)}"
                outcomes += [self._record(Outcome(a, FAILED, error)) for a in deletes + forgets]
                outcomes += [self._record(Outcome(a, SKIPPED, "not attempted: the store could not be updated")) for a in creates]
                return outcomes
        outcomes += [self._record(Outcome(a, DONE)) for a in forgets]
        outcomes += [self._delete_key(a) for a in deletes]

        if any(o.outcome == FAILED for o in outcomes):
            # The two-key quota would refuse the new key anyway.
            outcomes += [self._record(Outcome(a, SKIPPED, "not attempted: a deletion for this user failed")) for a in creates]
            return outcomes
        outcomes += [self._create_key(a) for a in creates]
        return outcomes

    def _create_key(self, action: Action) -> Outcome:
        try:
            created = self._iam.create_access_key(UserName=action.user)["AccessKey"]
        except ClientError as exc:
            if error_code(exc) == "LimitExceeded":
                return self._after_limit_exceeded(action)
            return self._record(Outcome(action, FAILED, describe_error(exc)))
        except BotoCoreError as exc:
            return self._record(Outcome(action, FAILED, describe_error(exc)))

        key = NewKey(user=action.user, key_id=created["AccessKeyId"], created=created["CreateDate"], secret=created["SecretAccessKey"])
        del created
        try:
            self._store.add(key)
        except _ERRORS as exc:
            # A key whose secret is not stored can never be used: take it back.
            error = f"store: {describe_error(exc)}"
            try:
                self._iam.delete_access_key(UserName=key.user, AccessKeyId=key.key_id)
                log.warning("key.rolled_back", user=key.user, key_id=key.key_id, reason="secret could not be stored")
            except (ClientError, BotoCoreError) as rollback_exc:
                log.error(
                    "key.rollback_failed",
                    user=key.user,
                    key_id=key.key_id,
                    error=describe_error(rollback_exc),
                    hint="the key is an orphan; the next bot-keys run deletes it after the grace period",
                )
                error += f"; rollback failed: {describe_error(rollback_exc)}"
            return self._record(Outcome(action, FAILED, error))
        log.info("key.stored", user=key.user, key_id=key.key_id, store=self._store.name)
        return self._record(Outcome(action, DONE, None))

    # --- run secrets ----------------------------------------------------------------

    def _delete_secret(self, action: Action) -> Outcome:
        if self._recheck is not None:
            changed = self._recheck(action)
            if changed:
                return self._record(Outcome(action, SKIPPED, changed))
        try:
            when = self._clock().isoformat() if self._clock else ""
            self._sm.tag_resource(
                SecretId=action.target,
                Tags=[{"Key": DELETED_FOR_RUN_TAG, "Value": action.run_id}, {"Key": DELETED_AT_TAG, "Value": when}],
            )
            if action.replica_regions:
                # DeleteSecret refuses a secret that still has replicas.
                self._sm.remove_regions_from_replication(SecretId=action.target, RemoveReplicaRegions=list(action.replica_regions))
            if self._recovery_window_days:
                self._sm.delete_secret(SecretId=action.target, RecoveryWindowInDays=self._recovery_window_days)
            else:
                self._sm.delete_secret(SecretId=action.target, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":  # already gone: what we wanted
                return self._record(Outcome(action, DONE))
            return self._record(Outcome(action, FAILED, describe_error(exc)))
        except BotoCoreError as exc:
            return self._record(Outcome(action, FAILED, describe_error(exc)))
        return self._record(Outcome(action, DONE))

    def _after_limit_exceeded(self, action: Action) -> Outcome:
        # Another actor created a key between our listing and now: look again.
        try:
            keys = list_access_keys(self._iam, action.user)
        except (ClientError, BotoCoreError) as exc:
            return self._record(Outcome(action, FAILED, f"LimitExceeded, then {describe_error(exc)}"))
        if sum(1 for k in keys if k.active) >= 2:
            return self._record(Outcome(action, SKIPPED, "user already has two keys (created concurrently); next run re-plans"))
        return self._record(Outcome(action, FAILED, f"LimitExceeded with {len(keys)} keys listed"))


_DONE_EVENTS = {
    DELETE_KEY: "key.deleted",
    CREATE_KEY: "key.created",
    FORGET_KEY: "store.key_forgotten",
    DELETE_SECRET: "secret.deleted",
}
