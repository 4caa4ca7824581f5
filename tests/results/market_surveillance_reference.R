# Reference values for workbench.market.surveillance from R's `surveillance` package.
#
#   Rscript tests/results/market_surveillance_reference.R   (run from the project root)
#
# Debian: apt-get install r-cran-surveillance (here: surveillance 1.20.3, R 4.x).
# Writes, beside this script:
#   market_ears_input.csv      day, unit, observed          (daily counts, 4 units)
#   market_ears_reference.csv  method, alpha, min_sigma, unit, day, upperbound, alarm
#   market_cusum_input.csv     week, unit, n, x, p0         (weekly binomial series, 3 units)
#   market_cusum_reference.csv h, odds_ratio, unit, week, s, alarm
# The tests (tests/test_market_surveillance.py) read these; R is not needed to run them.
suppressMessages(library(surveillance))
set.seed(20261126)
here <- "tests/results"

# ---------------------------------------------------------------- EARS C1 / C2 / C3 (earsC)
T <- 150
mu <- list(city = 18, district = 4, sparse = 0.35, outbreak = 6)
obs <- sapply(mu, function(m) rpois(T, m))
obs[100:106, "outbreak"] <- obs[100:106, "outbreak"] + c(3, 6, 9, 12, 9, 6, 3)
obs[40, "city"] <- obs[40, "city"] + 20
write.csv(data.frame(day = rep(1:T, ncol(obs)), unit = rep(colnames(obs), each = T),
                     observed = as.vector(obs)),
          file.path(here, "market_ears_input.csv"), row.names = FALSE)
s <- sts(observed = obs, start = c(2026, 1), frequency = 365)
cases <- list(list(method = "C1"), list(method = "C2"), list(method = "C3"),
              list(method = "C3", alpha = 0.001), list(method = "C1", minSigma = 1),
              list(method = "C2", baseline = 10, alpha = 0.01))
rows <- list()
for (cc in cases) {
  ctl <- c(list(baseline = 7), cc)
  if (!is.null(cc$baseline)) ctl$baseline <- cc$baseline
  res <- earsC(s, control = ctl)
  alpha <- if (!is.null(cc$alpha)) cc$alpha else if (cc$method == "C3") 0.025 else 0.001
  ms <- if (!is.null(cc$minSigma)) cc$minSigma else 0
  days <- res@control$range
  for (j in seq_len(ncol(obs))) {
    rows[[length(rows) + 1]] <- data.frame(method = cc$method, baseline = ctl$baseline, alpha = alpha,
                                           min_sigma = ms, unit = colnames(obs)[j], day = days,
                                           upperbound = upperbound(res)[, j], alarm = as.integer(alarms(res)[, j]))
  }
}
write.csv(do.call(rbind, rows), file.path(here, "market_ears_reference.csv"), row.names = FALSE)

# ---------------------------------------------------------------- binomial CUSUM (categoricalCUSUM)
W <- 104
units <- c("steady", "rising", "seasonal")
n <- sapply(units, function(u) rpois(W, 50))
n[20:21, "steady"] <- 0  # weeks without tests (a market closed for the festival)
season <- 0.03 * (1 + 0.3 * sin(2 * pi * (1:W) / 52))
p0 <- cbind(steady = rep(0.03, W), rising = rep(0.02, W), seasonal = season)
p_true <- p0
p_true[61:W, "rising"] <- 0.08
x <- matrix(rbinom(W * 3, as.vector(n), as.vector(p_true)), ncol = 3, dimnames = list(NULL, units))
write.csv(data.frame(week = rep(1:W, 3), unit = rep(units, each = W), n = as.vector(n), x = as.vector(x),
                     p0 = as.vector(p0)), file.path(here, "market_cusum_input.csv"), row.names = FALSE)
dBinom <- function(y, size, mu, log = FALSE) dbinom(y[1, , drop = FALSE], size = size, prob = mu[1, , drop = FALSE], log = log)
rows <- list()
for (h in c(2.5, 4)) for (or in c(2, 3)) for (u in units) {
  p1 <- or * p0[, u] / (1 - p0[, u] + or * p0[, u])
  st <- sts(observed = cbind(x[, u], n[, u] - x[, u]), populationFrac = cbind(n[, u], n[, u]),
            start = c(2025, 1), frequency = 52)
  res <- categoricalCUSUM(st, control = list(range = 1:W, h = h, pi0 = rbind(p0[, u], 1 - p0[, u]),
                                             pi1 = rbind(p1, 1 - p1), dfun = dBinom, ret = "value"))
  rows[[length(rows) + 1]] <- data.frame(h = h, odds_ratio = or, unit = u, week = 1:W,
                                         s = upperbound(res)[, 1], alarm = as.integer(alarms(res)[, 1]))
}
write.csv(do.call(rbind, rows), file.path(here, "market_cusum_reference.csv"), row.names = FALSE)
cat("written:", list.files(here, pattern = "^market_"), "\n")
cat(R.version.string, "; surveillance", as.character(packageVersion("surveillance")), "\n")
