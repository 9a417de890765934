"""The exceptions that reach the user as a single line and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (config, CSV, command line). Its message is the whole story: one line
    that names the culprit and, where it helps, the allowed values."""

    exit_code = 2


class TrackingServerDown(UserError):
    """The MLflow tracking server stopped answering during a study, after MLflow's own retries."""
