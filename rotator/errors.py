"""Exit codes, and the errors that decide one; importable from anywhere without import cycles."""

EXIT_OK = 0
EXIT_FAILED = 1
"""Some actions or lookups failed (the others were carried out)."""
EXIT_CONFIG = 2
"""Bad configuration or usage: nothing was touched."""
EXIT_REFUSED = 3
"""A safety brake refused the plan: nothing was touched."""


class ConfigError(Exception):
    """Bad configuration or usage: exit 2, nothing touched."""


class AccountNotAllowed(ConfigError):
    """The credentials are for an AWS account outside ROTATOR_ALLOWED_ACCOUNT_IDS."""
