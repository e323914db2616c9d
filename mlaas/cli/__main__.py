import sys

from mlaas.cli import main

sys.exit(main())
