"""python -m tf_ardm.export: see tf_ardm.cli.export."""
from tf_ardm.cli import export

if __name__ == "__main__":
  export.run()
