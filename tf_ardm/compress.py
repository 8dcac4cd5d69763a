"""python -m tf_ardm.compress: see tf_ardm.cli.compress."""
from tf_ardm.cli import compress

if __name__ == "__main__":
  compress.run()
