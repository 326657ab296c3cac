"""python -m filedock"""

from .cli import main

main()
