"""Invariants, judged against a :class:`~chaos.scenario.Scenario`, on moto's backend state and
on the bot-key store as its reader (the service) sees it, through a store view (chaos/stores.py:
``secretsmanager`` or ``gen3workflow-db``; the invariants are the same for both).

``Checker.after_request`` runs in the proxy after every forwarded request, with the
proxy's state lock held (nothing else changes the emulator meanwhile); with the
``gen3workflow-db`` store ``Checker.after_store_write`` also runs after every committed
write to the table (the runners reach the database directly, not through the proxy):

* ``wrong-deletion``: a seeded key that was not expired/inactive/orphan/rotation-due is
  gone (or both keys of a synchronised pair), a young orphan was deleted, a run secret
  that was not old enough was deleted;
* ``decoy-touched``: a decoy user's keys or tags, or a decoy secret, changed;
* ``end-user-key-created``: an end user got a key;
* ``too-many-keys``: more than two keys on a user;
* ``store-first-dead``: what the store hands out for a bot user (Secrets Manager: the first
  entry; the table: the newest row, every row tied at the greatest ``created_time``) does
  not name an existing, Active IAM key (with the secret IAM issued), for a bot user whose
  store named a live key at the start, or at any moment since;
* ``store-lists-deleted-key``: the store lists a key that IAM no longer has (other than
  the scenario's seeded stale entries): it was deleted before it was forgotten;
* ``store-secret-mismatch`` / ``store-malformed`` / ``store-AWSCURRENT``: the store holds
  a wrong secret, something other than a list of entries (a row that does not decrypt), or
  not exactly one version labelled AWSCURRENT (Secrets Manager only);
* ``wrong-store``: with the ``gen3workflow-db`` store, a bot-key secret appeared in Secrets
  Manager under the store prefix.

``Checker.check_output`` runs on every run's stdout and stderr (``secret-in-output``:
any seeded or newly created SecretAccessKey, stored secret or secret string), and
``Checker.converged`` after the final fault-free run (``not-converged``, which includes
a store that does not hand out the newer of the two keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chaos.scenario import ACCOUNT_ID, REGION, Scenario
from chaos.stores import SecretsManagerView, StoreRead, read_store  # noqa: F401 - read_store: kept importable here


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
    def __init__(self, scenario: Scenario, *, set_name: str, seed: int, store=None) -> None:
        self.s = scenario
        self.store = store or SecretsManagerView()
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
        self._decoy_store = self.store.snapshot_decoys(scenario.decoy_store)
        self._secret_names = set(sm_backend.secrets)
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

    def after_store_write(self, what: str) -> None:
        """After a committed write to the store's table (gen3workflow-db), with the proxy's state lock held."""
        self.store_writes_checked = getattr(self, "store_writes_checked", 0) + 1
        self.check_state(when=f"after table write {what} committed")

    def reads(self) -> dict[str, StoreRead]:
        return self.store.read_bots(self.s.bots.values())

    def excuse_unstored(self, when: str) -> None:
        """After a kill: keys the killed runner created and had not stored; their secret died with it.

        Called once the killed runner's last requests have been handled (requests it had
        sent before dying may still land after the SIGKILL, as on AWS). No runner can tell
        these keys from a concurrent runner's key that is about to be stored, so the next run
        rightly leaves them alone during the grace period (a run after it deletes them): they
        are treated like the seeded young orphans.
        """
        iam_backend, _ = _backends()
        reads = self.reads()
        for name, bot in self.s.bots.items():
            keys = iam_keys(iam_backend, name) or {}
            stored = {e.key_id for e in reads[name].entries}
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
        reads = self.reads()
        noun = self.store.first_noun
        for name, bot in s.bots.items():
            keys = present[name]
            pair = bot.at_most_one_of
            if pair and not (pair & set(keys)):
                self.violate("wrong-deletion", name, f"both keys of a synchronised pair deleted ({sorted(pair)}): only one was due", when, dedup="pair")
            read = reads[name]
            for kind, problem in read.problems:
                self.violate(kind, name, problem, when, dedup="")
            for e in read.entries:
                kid = e.key_id
                if kid in keys:
                    if e.secret is not None and keys[kid][1] != e.secret:
                        self.violate("store-secret-mismatch", name, f"store holds a wrong secret for {kid}", when, dedup=kid)
                elif kid not in bot.stale_ids:
                    self.violate(
                        "store-lists-deleted-key", name,
                        f"store lists {kid}, which IAM no longer has (deleted before it was forgotten)", when, dedup=kid,
                    )
            dead = [e for e in read.first if not (e.key_id in keys and keys[e.key_id][0] == "Active" and keys[e.key_id][1] == e.secret)]
            if read.first and not dead:
                self.must_be_live.add(name)
            elif name in self.must_be_live:
                first = dead[0] if dead else None
                tie = f" (one of {len(read.first)} rows tied at the greatest created_time)" if len(read.first) > 1 else ""
                if first is None:
                    why = "store is empty (nothing to hand out)"
                elif first.key_id not in keys:
                    why = f"{noun} {first.key_id}{tie} no longer exists in IAM"
                elif keys[first.key_id][0] != "Active":
                    why = f"{noun} {first.key_id}{tie} is {keys[first.key_id][0]}"
                elif first.secret is None:
                    why = f"{noun} {first.key_id}{tie} holds a secret that cannot be read"
                else:
                    why = f"{noun} {first.key_id}{tie} holds the wrong secret"
                self.violate("store-first-dead", name, why, when, dedup="")

        # the store's own decoys (rows of users that are not ours), and secrets in the wrong store
        if self._decoy_store:
            now_decoys = self.store.snapshot_decoys(s.decoy_store)
            for n, snap in self._decoy_store.items():
                if now_decoys.get(n) != snap:
                    self.violate("decoy-touched", f"user id {n}", f"{s.decoy_store[n]}: rows changed", when, dedup="")
        if not self.store.bots_in_secretsmanager:
            for n in set(sm_backend.secrets) - self._secret_names:
                if n.startswith(s.prefix):
                    self.violate("wrong-store", n, f"a bot-key store secret was created although the store is {self.store.name}", when, dedup="")

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
        iam_backend, _ = _backends()
        reads = self.reads()
        found = {}
        for name, bot in self.s.bots.items():
            keys = iam_keys(iam_backend, name) or {}
            stored = {e.key_id for e in reads[name].entries}
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
        reads = self.reads()
        created = {}
        for u in (iam_backend.users.get(name) for name in s.bots):
            for k in (u.access_keys if u else []):
                created[k.access_key_id] = _aware(k.create_date)
        for name, bot in s.bots.items():
            keys = iam_keys(iam_backend, name) or {}
            read = reads[name]
            problem = "; ".join(p for _, p in read.problems)
            stored = [e.key_id for e in read.entries]
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
            handed = [e.key_id for e in read.first if e.key_id in created]
            newest = max((created[k] for k in stored if k in created and keys.get(k, ("",))[0] == "Active"), default=None)
            if handed and newest is not None:
                older = [k for k in handed if created[k] < newest - timedelta(seconds=1)]
                if older:
                    problems.append(f"{self.store.first_noun} {older[0]} is not the newest stored key (the next rotation deletes the key handed out)")
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
