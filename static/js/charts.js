// Draw the Plotly figures that the server built (templates/includes/chart.html): on page load, and again for any
// chart that htmx swaps in (a new window, a new month). Each plot element names the JSON script holding its spec.
// After drawing, the element gets data-drawn="<n>" (how many times it was drawn), which the browser tests wait on.
(function () {
  "use strict";

  function plots(root) {
    var found = [];
    if (root.matches && root.matches("[data-plot]")) {
      found.push(root);
    }
    if (root.querySelectorAll) {
      root.querySelectorAll("[data-plot]").forEach(function (el) {
        found.push(el);
      });
    }
    return found;
  }

  function draw(root) {
    if (!window.Plotly) {
      return;
    }
    plots(root).forEach(function (el) {
      var script = document.getElementById(el.dataset.plot);
      if (!script) {
        return;
      }
      var spec = JSON.parse(script.textContent);
      window.Plotly.react(el, spec.data, spec.layout, spec.config).then(function () {
        el.dataset.drawn = String(Number(el.dataset.drawn || 0) + 1);
      });
    });
  }

  if (window.htmx) {
    window.htmx.onLoad(draw); // fires for the page body at start and for every swapped-in fragment
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      draw(document);
    });
  }
})();
