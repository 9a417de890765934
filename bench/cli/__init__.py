"""The ``lrbench`` command line. Every user error is one line on stderr and exit status 2."""
