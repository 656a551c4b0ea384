"""How results are shown: reading the results table, paper tables, figures, the report.

``results`` reads the results table and stored artifacts; it never imports model code.
"""
