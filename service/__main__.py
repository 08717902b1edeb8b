import sys

from facefleet.cli import main

sys.exit(main())
