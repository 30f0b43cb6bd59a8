"""``python -m llmsim.cli``: the ``simulate`` command line."""
from llmsim.cli import main

raise SystemExit(main())
