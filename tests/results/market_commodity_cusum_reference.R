# Reference values for the surveillance scheme's series (issue 16) from R's `surveillance`:
# the binomial CUSUM (categoricalCUSUM with a binomial density) on the kinds of series the
# scheme adds — a market's commodity with a few tests a week (some weeks none), one with
# ~17 a week rising five-fold, and a city-wide commodity with ~600 a week — at the odds
# ratios (4 for a market's commodity, 2 for the city's) and the fractional thresholds the
# false-alarm budget gives.
#
#   Rscript tests/results/market_commodity_cusum_reference.R   (run from the project root)
#
# Writes market_commodity_cusum_input.csv (week, unit, n, x, p0) and
# market_commodity_cusum_reference.csv (h, odds_ratio, unit, week, s, alarm);
# tests/test_market_scheme.py reads them (R is not needed to run the tests).
suppressMessages(library(surveillance))
set.seed(20261129)
here <- "tests/results"
W <- 52
units <- c("sparse", "small", "rising", "city")
lam <- c(sparse = 3, small = 9, rising = 17, city = 600)
n <- sapply(units, function(u) rpois(W, lam[[u]]))
n[c(6, 7, 30), "sparse"] <- 0
season <- 1 + 0.25 * sin(2 * pi * ((1:W) - 15) / 52)
p0 <- cbind(sparse = 0.012 * season, small = 0.045 * season, rising = 0.035 * season, city = 0.03 * season)
p_true <- p0
p_true[31:W, "rising"] <- 5 * p0[31:W, "rising"]
x <- matrix(rbinom(W * 4, as.vector(n), as.vector(p_true)), ncol = 4, dimnames = list(NULL, units))
write.csv(data.frame(week = rep(1:W, 4), unit = rep(units, each = W), n = as.vector(n), x = as.vector(x),
                     p0 = as.vector(p0)), file.path(here, "market_commodity_cusum_input.csv"), row.names = FALSE)
dBinom <- function(y, size, mu, log = FALSE) dbinom(y[1, , drop = FALSE], size = size, prob = mu[1, , drop = FALSE], log = log)
rows <- list()
for (cfg in list(c(5.37, 4), c(6.81, 4), c(3.72, 2))) for (u in units) {
  h <- cfg[1]; or <- cfg[2]
  p1 <- or * p0[, u] / (1 - p0[, u] + or * p0[, u])
  st <- sts(observed = cbind(x[, u], n[, u] - x[, u]), populationFrac = cbind(n[, u], n[, u]),
            start = c(2026, 1), frequency = 52)
  res <- categoricalCUSUM(st, control = list(range = 1:W, h = h, pi0 = rbind(p0[, u], 1 - p0[, u]),
                                             pi1 = rbind(p1, 1 - p1), dfun = dBinom, ret = "value"))
  rows[[length(rows) + 1]] <- data.frame(h = h, odds_ratio = or, unit = u, week = 1:W,
                                         s = upperbound(res)[, 1], alarm = as.integer(alarms(res)[, 1]))
}
write.csv(do.call(rbind, rows), file.path(here, "market_commodity_cusum_reference.csv"), row.names = FALSE)
cat(R.version.string, "; surveillance", as.character(packageVersion("surveillance")), "\n")
