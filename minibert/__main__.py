"""``python -m minibert download mrpc ...`` / ``python -m minibert checkpoint bert-base-uncased``: see assets.main.

(``python -m minibert.assets`` works too, but Python warns there because the package imports that module first.)
"""

from minibert.assets import main

main()
