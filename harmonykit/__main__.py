import sys

from harmonykit.cli import main

sys.exit(main())
