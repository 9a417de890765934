import sys

from bench.cli.entry import main

sys.exit(main())
