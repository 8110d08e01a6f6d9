from voxelgate.cli import main

raise SystemExit(main())
