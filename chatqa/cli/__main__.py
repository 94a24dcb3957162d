import sys

from chatqa.cli import main

sys.exit(main())
