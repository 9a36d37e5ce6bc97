"""Why AWP works, measured in weight space: ``landscape.py`` (1-D and 2-D robust weight loss
landscapes along filter-normalised directions) and ``flatness.py`` (Stutz et al.'s average- and
worst-case flatness)."""
