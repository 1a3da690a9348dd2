import sys

from web_dist.cli import main

sys.exit(main())
