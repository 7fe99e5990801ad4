"""Architecture search of CVNet's filtration ops (``cvnet-search``; paper section 4.3).

- :mod:`cvnet.search.supernet`: the supernet (the search cell at every position) and reading
  its op weights;
- :mod:`cvnet.search.searcher`: the alternating weight / architecture optimisation;
- :mod:`cvnet.search.cli`: ``cvnet-search``; :mod:`cvnet.search.compare`: ``cvnet-compare-ops``
  (the paper's Figure 5 comparison).
"""
