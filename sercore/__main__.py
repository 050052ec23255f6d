from sercore.cli import main

raise SystemExit(main())
