import sys

from tfcheckpointer.cli import main

sys.exit(main())
