from connect_sync.cli import main

main()
