"""The run directory: its one writer, its one reader, the summary's shape and the rules on it.

``schema`` names the summary's typed shape and the rules several readers share (run labels,
the reference run); ``writer`` owns every file a run writes; ``accumulate`` folds step records
into a run's summary; ``load`` is the only reader; ``rebuild`` recovers a summary from the CSVs.
"""
