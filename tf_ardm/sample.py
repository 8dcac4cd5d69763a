"""python -m tf_ardm.sample: see tf_ardm.cli.sample."""
from tf_ardm.cli import sample

if __name__ == "__main__":
  sample.run()
