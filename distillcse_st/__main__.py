import sys

from distillcse_st.cli import main

sys.exit(main())
