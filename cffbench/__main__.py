from cffbench.cli import main

main()
