"""The Streamlit app's logic. The pages in ``pages/`` are thin shells over these modules.

Only :mod:`livercore.app.state` and :mod:`livercore.app.ui` import Streamlit; the rest
(inputs, example cases, measurements, figures, comparison, report) are plain functions with
tests of their own, usable without a running app.
"""
