"""`python -m localcloud.dataworks`: run the DataWorks emulator in the foreground."""

from .server import main

raise SystemExit(main())
