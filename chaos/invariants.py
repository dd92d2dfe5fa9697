"""Invariants, judged against a :class:`~chaos.scenario.Scenario`, on moto's backend state.

``Checker.after_request`` runs in the proxy after every forwarded request, with the
proxy's state lock held (nothing else changes the emulator meanwhile):

* ``wrong-deletion``: a seeded key that was not expired/inactive/orphan/rotation-due is
  gone (or both keys of a synchronised pair), a young orphan was deleted, a run secret
  that was not old enough was deleted;
* ``decoy-touched``: a decoy user's keys or tags, or a decoy secret, changed;
* ``end-user-key-created``: an end user got a key;
* ``too-many-keys``: more than two keys on a user;
* ``store-first-dead``: the store's first entry of a bot user does not name an existing,
  Active IAM key (with the secret IAM issued), for a bot user whose store named a live
  key at the start, or at any moment since;
* ``store-lists-deleted-key``: the store lists a key that IAM no longer has (other than
  the scenario's seeded stale entries): it was deleted before it was forgotten;
* ``store-secret-mismatch`` / ``store-malformed`` / ``store-AWSCURRENT``: the store holds
  a wrong secret, something other than a list of entries, or not exactly one version
  labelled AWSCURRENT.

``Checker.check_output`` runs on every run's stdout and stderr (``secret-in-output``:
any seeded or newly created SecretAccessKey, stored secret or secret string), and
``Checker.converged`` after the final fault-free run (``not-converged``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from chaos.scenario import ACCOUNT_ID, REGION, Scenario


@dataclass(frozen=True)
class Violation:
    set: str
    seed: int
    kind: str
    subject: str
    what: str
    when: str

    def line(self) -> str:
        return f"[{self.set} seed={self.seed}] {self.kind}: {self.subject}: {self.what} ({self.when})"


def _backends():
    from moto.iam.models import iam_backends
    from moto.secretsmanager.models import secretsmanager_backends

    return iam_backends[ACCOUNT_ID]["global"], secretsmanager_backends[ACCOUNT_ID][REGION]


def _aware(value) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iam_keys(iam_backend, user: str) -> dict[str, tuple[str, str]] | None:
    """key id -> (status, secret) of one user, or None if the user does not exist."""
    u = iam_backend.users.get(user)
    if u is None:
        return None
    return {k.access_key_id: (k.status, k.secret_access_key) for k in u.access_keys}


def read_store(sm_backend, name: str) -> tuple[list[dict] | None, str | None]:
    """(entries, problem) of a store secret as a reader with VersionStage=AWSCURRENT sees it."""
    secret = sm_backend.secrets.get(name)
    if secret is None or getattr(secret, "is_deleted", lambda: False)():
        return None, None
    current = [v for v in secret.versions.values() if "AWSCURRENT" in v.get("version_stages", [])]
    if not current:
        return None, "no version labelled AWSCURRENT"
    problem = None
    if len(current) > 1:
        problem = f"{len(current)} versions labelled AWSCURRENT (moto keeps a stale default version; see TOOLS.md)"
    raw = current[0].get("secret_string")  # GetSecretValue(VersionStage=AWSCURRENT) returns the first
    if raw is None:
        return None, "AWSCURRENT has no SecretString"
    try:
        entries = json.loads(raw)
    except ValueError:
        return None, "AWSCURRENT value is not JSON"
    if not isinstance(entries, list):
        return None, "AWSCURRENT value is not a JSON list"
    for e in entries:
        if not (
            isinstance(e, dict)
            and isinstance(e.get("access_key_id"), str)
            and isinstance(e.get("secret_access_key"), str)
            and isinstance(e.get("created"), str)
        ):
            return None, "an entry is not {access_key_id, secret_access_key, created} strings"
    return entries, problem


def _snapshot_secret(secret) -> tuple:
    versions = tuple(
        sorted((vid, tuple(sorted(v.get("version_stages", []))), v.get("secret_string")) for vid, v in secret.versions.items())
    )
    tags = tuple(sorted((t["Key"], t["Value"]) for t in (secret.tags or [])))
    return (versions, secret.description, tags, secret.deleted_date)


def _snapshot_user(iam_backend, name: str) -> tuple | None:
    u = iam_backend.users.get(name)
    if u is None:
        return None
    tags = iam_backend.tagger.list_tags_for_resource(u.arn).get("Tags", [])
    ks = tuple(sorted((k.access_key_id, k.status, _aware(k.create_date).isoformat()) for k in u.access_keys))
    return (tuple(sorted((t["Key"], t["Value"]) for t in tags)), ks)


# Errors after which a runner cannot know whether its request was applied.
_AMBIGUOUS = (
    "ConnectionClosedError", "EndpointConnectionError", "ReadTimeout", "ConnectTimeout", "ConnectionError",
    "ProtocolError", "HTTPClientError", "InternalServiceError", "ServiceUnavailable", "ServiceFailure",
    "InternalFailure", "500", "503",
)


class Checker:
    def __init__(self, scenario: Scenario, *, set_name: str, seed: int) -> None:
        self.s = scenario
        self.set_name = set_name
        self.seed = seed
        self.violations: list[Violation] = []
        self._seen: set[tuple[str, str, str]] = set()
        self.phase = "start"
        self.hidden: set[str] = set(scenario.hidden)
        iam_backend, sm_backend = _backends()
        self._decoy_users = {n: _snapshot_user(iam_backend, n) for n in scenario.decoy_users}
        self._decoy_secrets = {n: _snapshot_secret(sm_backend.secrets[n]) for n in scenario.decoy_secrets}
        self._kept_secrets = {n: _snapshot_secret(sm_backend.secrets[n]) for n in scenario.kept_run_secrets}
        self.must_be_live = {name for name, b in scenario.bots.items() if b.usable_at_start}
        self.requests_checked = 0
        self.key_origin: dict[str, str] = {}
        self.excused: dict[str, str] = {}
        self._request = "seeding"
        self.check_state(when="seeded")

    # --- recording ----------------------------------------------------------------

    def violate(self, kind: str, subject: str, what: str, when: str, *, dedup: str | None = None) -> None:
        key = (kind, subject, dedup if dedup is not None else what)
        if key in self._seen:
            return
        self._seen.add(key)
        if subject in self.s.bots:
            subject = f"{subject} [bot: {self.s.bots[subject].shape}]"
        elif subject in self.s.end_users:
            subject = f"{subject} [end user: {self.s.end_users[subject]}]"
        self.violations.append(Violation(self.set_name, self.seed, kind, subject, what, f"{self.phase}, {when}"))

    # --- after every request ------------------------------------------------------

    def after_request(self, info) -> None:
        self.requests_checked += 1
        when = f"after request #{info.index} {info.service}:{info.operation}" + (f" [{info.fault}]" if info.fault else "")
        self._request = f"{self.phase}: request #{info.index} {info.operation}" + (f" [{info.fault}]" if info.fault else "")
        self.check_state(when=when)

    def excuse_unstored(self, when: str) -> None:
        """After a kill: keys the killed runner created and had not stored; their secret died with it.

        Called once the killed runner's last requests have been handled (requests it had
        sent before dying may still land after the SIGKILL, as on AWS). No runner can tell
        these keys from a concurrent runner's key that is about to be stored, so the next run
        rightly leaves them alone during the grace period (a run after it deletes them): they
        are treated like the seeded young orphans.
        """
        iam_backend, sm_backend = _backends()
        for name, bot in self.s.bots.items():
            keys = iam_keys(iam_backend, name) or {}
            entries, _ = read_store(sm_backend, bot.store_secret)
            stored = {e["access_key_id"] for e in entries or []}
            for k in set(keys) - stored - set(self.s.keys):
                bot.young_orphans.add(k)
                self.excused[k] = f"{name}: created by the killed runner, not stored when it was killed ({when})"

    def origin(self, key_id: str) -> str:
        """Which request created a key the scenario did not seed."""
        return self.key_origin.get(key_id, "seeded" if key_id in self.s.keys else "?")

    def check_state(self, *, when: str) -> None:
        iam_backend, sm_backend = _backends()
        s = self.s
        # every key secret ever seen must stay out of the output
        for u in iam_backend.users.values():
            for k in u.access_keys:
                if k.access_key_id not in self.key_origin and k.access_key_id not in s.keys:
                    self.key_origin[k.access_key_id] = self._request
                self.hidden.add(k.secret_access_key)
            if len(u.access_keys) > 2:
                self.violate("too-many-keys", u.name, f"{len(u.access_keys)} keys", when)

        # seeded keys of managed users: wrong deletions
        present: dict[str, dict[str, tuple[str, str]]] = {}
        for user in list(s.end_users) + list(s.bots):
            present[user] = iam_keys(iam_backend, user) or {}
        for fact in s.keys.values():
            if fact.key_id in present[fact.user]:
                continue
            if not fact.deletable:
                self.violate("wrong-deletion", fact.user, f"deleted {fact.key_id}, which was {fact.why}", when, dedup=fact.key_id)
        for name in s.end_users:
            extra = set(present[name]) - set(s.keys)
            if extra:
                self.violate("end-user-key-created", name, f"new key(s) {sorted(extra)} on an end user", when, dedup="")

        # bot users: the store as the service reads it
        for name, bot in s.bots.items():
            keys = present[name]
            pair = bot.at_most_one_of
            if pair and not (pair & set(keys)):
                self.violate("wrong-deletion", name, f"both keys of a synchronised pair deleted ({sorted(pair)}): only one was due", when, dedup="pair")
            entries, problem = read_store(sm_backend, bot.store_secret)
            if problem:
                kind = "store-AWSCURRENT" if "AWSCURRENT" in problem and entries is not None else "store-malformed"
                self.violate(kind, name, problem, when, dedup="")
            entries = entries or []
            for e in entries:
                kid = e["access_key_id"]
                if kid in keys:
                    if keys[kid][1] != e["secret_access_key"]:
                        self.violate("store-secret-mismatch", name, f"store holds a wrong secret for {kid}", when, dedup=kid)
                elif kid not in bot.stale_ids:
                    self.violate(
                        "store-lists-deleted-key", name,
                        f"store lists {kid}, which IAM no longer has (deleted before it was forgotten)", when, dedup=kid,
                    )
            first = entries[0]["access_key_id"] if entries else None
            live = first is not None and first in keys and keys[first][0] == "Active" and keys[first][1] == entries[0]["secret_access_key"]
            if live:
                self.must_be_live.add(name)
            elif name in self.must_be_live:
                if first is None:
                    why = "store is empty (nothing to hand out)"
                elif first not in keys:
                    why = f"store's first entry {first} no longer exists in IAM"
                elif keys[first][0] != "Active":
                    why = f"store's first entry {first} is {keys[first][0]}"
                else:
                    why = f"store's first entry {first} holds the wrong secret"
                self.violate("store-first-dead", name, why, when, dedup="")

        # decoys
        for n, snap in self._decoy_users.items():
            if _snapshot_user(iam_backend, n) != snap:
                self.violate("decoy-touched", n, f"{s.decoy_users[n]}: keys or tags changed", when, dedup="")
        for n, snap in self._decoy_secrets.items():
            secret = sm_backend.secrets.get(n)
            if secret is None or _snapshot_secret(secret) != snap:
                self.violate("decoy-touched", n, f"{s.decoy_secrets[n]}: secret changed or deleted", when, dedup="")
        for n in s.kept_run_secrets:
            secret = sm_backend.secrets.get(n)
            if secret is None or secret.deleted_date:
                self.violate("wrong-deletion", n, "run secret deleted although younger than the max age", when, dedup="")
            elif _snapshot_secret(secret)[0] != self._kept_secrets[n][0]:
                self.violate("wrong-deletion", n, "run secret's value changed", when, dedup="value")

    # --- outputs -----------------------------------------------------------------

    def check_output(self, label: str, *texts: str) -> None:
        blob = "\n".join(texts)
        for secret in self.hidden:
            if secret and secret in blob:
                self.violate("secret-in-output", label, f"a secret value ({len(secret)} chars) appears in the output", "output", dedup=label)
                return

    # --- after the final fault-free run -----------------------------------------------

    def unstored_keys(self) -> dict[str, list[str]]:
        """Bot users with keys the store does not list, other than the seeded young orphans."""
        iam_backend, sm_backend = _backends()
        found = {}
        for name, bot in self.s.bots.items():
            keys = iam_keys(iam_backend, name) or {}
            entries, _ = read_store(sm_backend, bot.store_secret)
            stored = {e["access_key_id"] for e in entries or []}
            orphans = sorted(set(keys) - stored - bot.young_orphans)
            if orphans:
                found[name] = orphans
        return found

    def false_failures(self, doc, label: str) -> None:
        """Actions a run reported as failed although their effect is in place (exit 1 for nothing)."""
        iam_backend, sm_backend = _backends()
        for job in (doc or {}).get("jobs", []):
            for a in job.get("actions", []):
                if a.get("outcome") != "failed":
                    continue
                target, error = a.get("target", ""), a.get("error") or ""
                if any(word in error for word in _AMBIGUOUS):
                    continue  # the last attempt's answer was lost: the runner could not know
                if a.get("kind") == "delete-secret":
                    secret = sm_backend.secrets.get(target)
                    if secret is None or secret.deleted_date:
                        self.violate("false-failure", target, f"delete-secret reported failed ({error}) but the secret is scheduled for deletion", label)
                elif a.get("kind") == "delete-key" and "/" in target:
                    user, key_id = target.rsplit("/", 1)
                    if key_id not in (iam_keys(iam_backend, user) or {}):
                        self.violate("false-failure", user, f"delete-key {key_id} reported failed ({error}) but the key is gone", label, dedup=key_id)

    def age_excused(self, by) -> int:
        """Age the keys excused at a kill past the orphan grace period (as if the next
        scheduled run came after it): from now on they are orphans the rotator must delete."""
        iam_backend, _ = _backends()
        aged = 0
        for name, bot in self.s.bots.items():
            u = iam_backend.users.get(name)
            for k in (u.access_keys if u else []):
                if k.access_key_id in self.excused:
                    k.create_date = _aware(k.create_date).replace(tzinfo=None) - by
                    bot.young_orphans.discard(k.access_key_id)
                    aged += 1
        return aged

    def report_orphans(self, name: str, orphans, when: str) -> None:
        for k in sorted(orphans):
            self.violate("orphan-left", name, f"unstored key {k} (its secret is lost) created by {self.origin(k)}", when, dedup=k)

    def converged(self, *, when: str, bots_only: bool = False, ignore_unstored: bool = False) -> None:
        iam_backend, sm_backend = _backends()
        s = self.s
        for name, bot in s.bots.items():
            keys = iam_keys(iam_backend, name) or {}
            entries, problem = read_store(sm_backend, bot.store_secret)
            stored = [e["access_key_id"] for e in entries or []]
            active = [k for k, (status, _) in keys.items() if status == "Active"]
            unstored = set(keys) - set(stored) - bot.young_orphans
            problems = []
            if len(keys) != 2 or len(active) != 2:
                problems.append(f"{len(active)} active of {len(keys)} keys (want 2 active)")
            if not ignore_unstored:
                self.report_orphans(name, unstored, when)
            dead = set(stored) - set(keys)
            if dead:
                problems.append(f"store lists {sorted(dead)}, not in IAM")
            if len(stored) != len(set(stored)):
                problems.append("store lists a key twice")
            lost_young = bot.young_orphans - set(keys)
            if lost_young:
                problems.append(f"young orphan {sorted(lost_young)} gone")
            if problem:
                problems.append(f"store: {problem}")
            if problems:
                self.violate("not-converged", name, "; ".join(problems), when, dedup=when)
        if bots_only:
            return
        for fact in s.keys.values():
            if fact.kind == "user" and fact.deletable and fact.key_id in (iam_keys(iam_backend, fact.user) or {}):
                self.violate("not-converged", fact.user, f"{fact.why} key {fact.key_id} still there", when, dedup=fact.key_id)
        for n in sorted(s.old_run_secrets):
            secret = sm_backend.secrets.get(n)
            if secret is not None and not secret.deleted_date:
                self.violate("not-converged", n, "old run secret (45d) not scheduled for deletion", when, dedup="")
