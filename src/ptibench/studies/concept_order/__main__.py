import sys

from ptibench.studies.concept_order.cli import main

sys.exit(main())
