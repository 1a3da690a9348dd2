import sys

from web_dist.geo import main

sys.exit(main())
