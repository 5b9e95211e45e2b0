"""What fine-tuning learns first: the concept's appearance or the training images' context.

Importing this package adds its section (concept_order.md/.png, one summary line per stage) to
the reports; the pytest plugin and the `ptibench` command import it.
"""

from ptibench.results.sections import Section, register_section
from ptibench.studies.concept_order.report import render, summary_lines

register_section(Section("concept-order", summary_lines, render))
