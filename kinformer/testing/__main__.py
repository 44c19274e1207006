from kinformer.testing.server import main

main()
