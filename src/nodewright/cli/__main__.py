from nodewright.cli.app import main

main()
