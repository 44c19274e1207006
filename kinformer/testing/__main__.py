import sys

from kinformer.testing._cli import main

sys.exit(main())
