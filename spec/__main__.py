import sys

from ckptspec.cli import main

sys.exit(main())
