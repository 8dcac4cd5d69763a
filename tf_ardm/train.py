"""python -m tf_ardm.train: see tf_ardm.cli.train."""
from tf_ardm.cli import train

if __name__ == "__main__":
  train.run()
