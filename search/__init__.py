"""Design-space search and capacity sizing (``simulate search``, ``simulate size``).

:func:`explore` ranks the candidates of a :class:`SearchSpace` by an objective (goodput,
throughput, latency, cost, energy); :func:`size` finds the cheapest replica counts carrying a rate
within SLOs. Both return pandas DataFrames; :func:`run_search` / :func:`run_sizing` return the full
results (Pareto front, counts, JSON form). ``partition`` sizes uneven pipeline splits for training.
"""
from llmsim.search.capacity import SizingResult, run_sizing, size
from llmsim.search.evaluate import SLOTarget, WorkloadSpec
from llmsim.search.explore import OBJECTIVES, SearchResult, explore, run_search
from llmsim.search.space import Candidate, SearchSpace, load_space

__all__ = ["OBJECTIVES", "Candidate", "SLOTarget", "SearchResult", "SearchSpace", "SizingResult", "WorkloadSpec",
           "explore", "load_space", "run_search", "run_sizing", "size"]
