"""`python -m hipgen_utils ...` is the same as the `hipgen` command."""

from hipgen_utils.cli import main

raise SystemExit(main())
