"""python -m tf_ardm.evaluate: see tf_ardm.cli.evaluate."""
from tf_ardm.cli import evaluate

if __name__ == "__main__":
  evaluate.run()
