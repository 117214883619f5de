// What the page knows: the key, and the tasks, models, datasets and results shown with
// it.

export const state = {
  key: null,
  tasks: new Map(), // id -> task
  models: [],
  datasets: new Map(), // id -> dataset
  currentDatasetId: null,
  uploadDatasetId: null, // the stored dataset of the file uploaded from this page, once profiled
  uploadFile: null,
  detectFile: null,
  detectFileIsUpload: true,
  preferredModel: null,
  trainTaskId: null,
  result: null, // the last detection shown
  selectedRow: null,
  recent: [],
  feedCount: 0,
  busy: { upload: false, train: false, detect: false },
  excludeAuto: true, // the train exclude field still holds what the page put there
};
