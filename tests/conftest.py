import os
import sys

# the helpers in tests/ import each other by module name
sys.path.insert(0, os.path.dirname(__file__))
