"""Raw datasets fetched and turned into the prepared arrays every study reads."""
