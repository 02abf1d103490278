// The create form's selectors come from the provider's catalog: a location, then the server types
// available there (with their monthly price, cheapest first, then fewest cores), then the images built for
// that type's architecture. The first choice of type is the README's cx23 when the location sells it.
(function () {
  "use strict";
  var form = document.getElementById("create-node");
  if (!form) { return; }
  var provider = document.getElementById("nw-provider");
  var location = document.getElementById("nw-location");
  var type = document.getElementById("nw-type");
  var image = document.getElementById("nw-image");
  var cost = document.getElementById("nw-cost");
  var state = document.getElementById("nw-catalog-state");
  var catalog = null;

  function fill(select, options, wanted) {
    var keep = wanted || select.dataset.value || select.value;
    var known = options.some(function (o) { return o.value === keep; });
    if (!known && select.dataset.default) { keep = select.dataset.default; }
    select.textContent = "";
    options.forEach(function (o) {
      var option = document.createElement("option");
      option.value = o.value;
      option.textContent = o.label;
      if (o.value === keep) { option.selected = true; }
      select.appendChild(option);
    });
    select.dataset.value = "";
  }

  function price(st, loc) {
    var p = st.prices.filter(function (x) { return x.location === loc; })[0];
    return p ? Number(p.monthly_gross) : null;
  }

  function refreshImages() {
    var st = catalog.server_types.filter(function (t) { return t.name === type.value; })[0];
    var arch = st ? st.architecture : null;
    fill(image, catalog.images.filter(function (i) { return i.architecture === arch && !i.deprecated; })
      .map(function (i) {
        // A snapshot is named by its id: say what it is (its description) beside the id.
        var label = i.kind === "snapshot" ? i.description + " (image " + i.name + ", " + i.architecture + ")"
          : i.name + " (" + i.architecture + ")";
        return { value: i.name, label: label };
      }));
    var monthly = st ? price(st, location.value) : null;
    cost.textContent = monthly === null ? "" :
      "Costs about " + monthly.toFixed(2) + " EUR per month (gross), billed hourly until deleted.";
  }

  function refreshTypes() {
    var loc = location.value;
    var sold = catalog.server_types.filter(function (t) {
      return t.available_in.indexOf(loc) !== -1 && t.deprecated_in.indexOf(loc) === -1 && !t.deprecated;
    });
    sold.sort(function (a, b) {
      var pa = price(a, loc), pb = price(b, loc);
      if (pa !== pb) { return (pa === null ? Infinity : pa) - (pb === null ? Infinity : pb); }
      if (a.cores !== b.cores) { return a.cores - b.cores; }
      return a.name < b.name ? -1 : (a.name > b.name ? 1 : 0);
    });
    fill(type, sold.map(function (t) {
      var m = price(t, loc);
      return { value: t.name, label: t.name + " · " + t.cores + " vCPU, " + t.memory_gb + " GB" +
        (m === null ? "" : " · " + m.toFixed(2) + " EUR/month") };
    }));
    refreshImages();
  }

  function load() {
    state.textContent = "Loading the catalog…";
    fetch("/api/providers/" + provider.value + "/catalog", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        catalog = data;
        state.textContent = data.stale ? "The provider is not answering: showing its last known catalog." : "";
        fill(location, data.locations.map(function (l) { return { value: l.name, label: l.name + " · " + l.city }; }));
        refreshTypes();
      })
      .catch(function () { state.textContent = "The catalog could not be loaded; check the provider's status."; });
  }

  provider.addEventListener("change", load);
  location.addEventListener("change", refreshTypes);
  type.addEventListener("change", refreshImages);
  load();
})();
