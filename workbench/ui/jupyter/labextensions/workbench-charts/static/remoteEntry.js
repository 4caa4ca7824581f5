// workbench-charts: a JupyterLab / Voilà mime renderer for the workbench's interactive charts
// (workbench.ui.charts.PLOTLY_MIME). Written by hand, no build step: a federated-extension
// container (init with the host's share scope, get "./mimeExtension") whose module is this file
// alone; plotly.js's cartesian bundle (scatter, bar, heatmap … : every trace the workbench
// draws) is loaded from beside it when the first chart is drawn. jupyterlab-plotly's container
// loads its 4.7 MB chunk (the whole of plotly.js) at the start of every page, with or without
// a chart; Voilà runs with it denied (workbench.ui.server.voila_command).
var _JUPYTERLAB;
(function () {
  "use strict";
  _JUPYTERLAB = typeof _JUPYTERLAB === "undefined" ? {} : _JUPYTERLAB;
  var NAME = "workbench-charts";
  var MIME = "application/vnd.workbench.plotly.v1+json";
  var PLOTLY = "plotly-cartesian-4.1.1.min.js";
  var here = (document.currentScript && document.currentScript.src || "").replace(/[^/]*$/, "");
  var scope = null;
  var loading = null;

  function loadPlotly() {
    if (window.Plotly && window.Plotly.react) return Promise.resolve(window.Plotly);
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        // plotly's bundle sets window.Plotly; a page with an AMD loader would take it as a module
        var amd = window.define && window.define.amd ? window.define : null;
        if (amd) window.define = undefined;
        var restore = function () { if (amd) window.define = amd; };
        var s = document.createElement("script");
        s.async = true;
        s.src = here + PLOTLY;
        s.onload = function () { restore(); resolve(window.Plotly); };
        s.onerror = function () {
          restore();
          loading = null;
          reject(new Error("图表组件（plotly.js）未能加载：" + s.src));
        };
        document.head.appendChild(s);
      });
    }
    return loading;
  }

  function shared(name) {
    // a package from the host's share scope (the copy already loaded, else the newest)
    var versions = scope && scope[name];
    if (!versions) return Promise.reject(new Error(NAME + ": the host shares no " + name));
    var loaded = Object.keys(versions).filter(function (k) { return versions[k].loaded; });
    var v = loaded[0] || Object.keys(versions).sort(function (a, b) {
      var pa = a.split(/[.-]/).map(Number), pb = b.split(/[.-]/).map(Number);
      for (var i = 0; i < 3; i++) if ((pa[i] || 0) !== (pb[i] || 0)) return (pb[i] || 0) - (pa[i] || 0);
      return 0;
    })[0];
    return Promise.resolve(versions[v].get()).then(function (factory) { return factory(); });
  }

  function module(Widget) {
    class PlotlyChart extends Widget {
      constructor(options) {
        super();
        this.mimeType = options.mimeType;
        this.addClass("wb-plotly-chart");
        var self = this;
        this._attached = new Promise(function (resolve) { self._resolveAttached = resolve; });
      }

      renderModel(model) {
        var spec = model.data[this.mimeType] || {};
        var node = this.node;
        var self = this;
        // plotly sizes a chart to its container: drawn once the renderer is in the page
        return Promise.all([loadPlotly(), this._attached]).then(function (got) {
          if (self.isDisposed) return undefined;
          return got[0].react(node, spec.data || [], spec.layout || {}, spec.config || {});
        }).catch(function (err) {
          node.textContent = String(err && err.message || err);
          node.classList.add("wb-error");
        });
      }

      onAfterAttach(msg) {
        super.onAfterAttach(msg);
        this._resolveAttached();
      }

      _relayout() {
        var node = this.node;
        if (window.Plotly && node._fullLayout && node.offsetWidth > 0) window.Plotly.Plots.resize(node);
      }

      onAfterShow(msg) { super.onAfterShow(msg); this._relayout(); }

      onResize(msg) { super.onResize(msg); this._relayout(); }

      dispose() {
        if (this.isDisposed) return;
        this._resolveAttached();   // a renderer disposed before it was attached: its draw ends
        if (window.Plotly && this.node._fullLayout) window.Plotly.purge(this.node);
        super.dispose();
      }
    }

    var extension = {
      id: NAME + ":plotly",
      rendererFactory: {
        safe: true,
        mimeTypes: [MIME],
        defaultRank: 0,
        createRenderer: function (options) { return new PlotlyChart(options); }
      },
      rank: 0,
      dataType: "json"
    };
    return { __esModule: true, default: extension };
  }

  // charts follow the window's width too (their config has responsive off: the renderer resizes)
  window.addEventListener("resize", function () {
    if (!window.Plotly) return;
    document.querySelectorAll(".wb-plotly-chart.js-plotly-plot").forEach(function (n) {
      if (n.offsetWidth > 0) window.Plotly.Plots.resize(n);
    });
  });

  _JUPYTERLAB[NAME] = {
    init: function (shareScope) { scope = shareScope; return Promise.resolve(); },
    get: function (name) {
      if (name !== "./mimeExtension" && name !== "./index") {
        return Promise.reject(new Error("Module \"" + name + "\" does not exist in container " + NAME));
      }
      return shared("@lumino/widgets").then(function (lw) {
        var m = module(lw.Widget);
        return function () { return m; };
      });
    }
  };
})();
