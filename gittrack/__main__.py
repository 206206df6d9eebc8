from gittrack.cli import main

main()
