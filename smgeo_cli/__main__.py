from smgeo_cli.cli import main

main()
