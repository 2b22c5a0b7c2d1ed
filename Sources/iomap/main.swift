print("iomap")
