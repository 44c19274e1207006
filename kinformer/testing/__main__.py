from kinformer.testing._cli import main

main()
