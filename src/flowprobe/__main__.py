from flowprobe.cli import main

raise SystemExit(main())
