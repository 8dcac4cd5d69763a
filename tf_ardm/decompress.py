"""python -m tf_ardm.decompress: see tf_ardm.cli.decompress."""
from tf_ardm.cli import decompress

if __name__ == "__main__":
  decompress.run()
